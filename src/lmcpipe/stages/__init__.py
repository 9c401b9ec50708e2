"""Stage entrypoints: one module per ``lmcpipe <stage>`` subcommand, named after it.

A rule's shell calls ``lmcpipe <stage>`` and its code lives in ``lmcpipe/stages/<stage>.py``
(``-`` written ``_``): ``add_arguments(parser)`` declares the flags, ``main(args)`` reads the
files, calls a pure function of a domain module (which tests call directly) and writes the
outputs. Nothing else imports these modules.

A flag holding JSON is a ``lmcpipe.hparams.JsonFlag``: checked against what it holds while the
arguments are parsed, so a bad value is one line naming the flag and the key, before any data is
read. A stage whose flags need no torch imports torch inside ``main``: the CLI imports the module
to parse the flags, and a bad one is then refused in a fraction of a second.
"""
