import sys

from titan_ray.cli import main

sys.exit(main())
