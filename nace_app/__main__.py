import sys

from nace_app.cli.main import main

sys.exit(main())
