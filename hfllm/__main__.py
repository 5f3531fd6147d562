from hfllm.cli import main

raise SystemExit(main())
