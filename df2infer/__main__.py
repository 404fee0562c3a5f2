import sys

from df2infer.apps.main import main

sys.exit(main())
