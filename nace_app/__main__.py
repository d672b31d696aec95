import sys

from nace_app.cli import main

sys.exit(main())
