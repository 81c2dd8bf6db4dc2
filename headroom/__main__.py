from headroom.cli import main

raise SystemExit(main())
