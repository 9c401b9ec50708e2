from lmcpipe.cli import main

raise SystemExit(main())
