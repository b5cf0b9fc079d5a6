"""``python -m trl_igrpo`` is the ``trl-igrpo`` command line (:mod:`trl_igrpo.cli`)."""

import sys

from trl_igrpo.cli import main

if __name__ == "__main__":
    sys.exit(main())
