from archlab.cli import main

raise SystemExit(main())
