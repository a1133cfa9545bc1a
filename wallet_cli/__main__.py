"""``python -m wallet_cli``: the same as the ``civic-wallet`` console script."""

from wallet_cli.quick import main

raise SystemExit(main())
