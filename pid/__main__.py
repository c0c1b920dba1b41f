import sys

from pid.cli import main

sys.exit(main())
