from aggregator.accounts.cli import main

raise SystemExit(main())
