import sys

from df2infer.cli import main

sys.exit(main())
