import sys

if sys.argv[1:2] == ["proxy"]:
    # Before anything else is imported (headroom.cli's imports take 50-100 ms on a slow
    # machine): a stop from then on is noted and honoured (headroom.workers.early_stop).
    from headroom.workers.early_stop import note_stop_signals

    note_stop_signals()

from headroom.cli import main  # after the stop signals are noted

raise SystemExit(main())
