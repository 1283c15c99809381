import sys

from directpo.cli import main

sys.exit(main())
