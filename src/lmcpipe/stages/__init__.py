"""Stage entrypoints: one module per ``lmcpipe <stage>`` subcommand, named after it.

A rule's shell calls ``lmcpipe <stage>`` and its code lives in ``lmcpipe/stages/<stage>.py``
(``-`` written ``_``): ``add_arguments(parser)`` declares the flags, ``main(args)`` reads the
files, calls a pure function of a domain module (which tests call directly) and writes the
outputs. Nothing else imports these modules.
"""
