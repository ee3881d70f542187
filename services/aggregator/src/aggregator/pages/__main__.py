from aggregator.pages.cli import main

raise SystemExit(main())
