import sys

from pid.cli.commands import main

sys.exit(main())
