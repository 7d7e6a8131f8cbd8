import sys

from detector.console import main

sys.exit(main())
