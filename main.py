from tradelab.cli.app import main

raise SystemExit(main())
