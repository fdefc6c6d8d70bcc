# Stand-in for ansible-test's get-pip bootstrap script (its download host is not reachable here).
# scripts/sanity.sh copies it to ~/.ansible/test/cache/get_pip_<version>.py beside the pip wheel it
# downloaded from PyPI; ansible-test then runs it as "python get_pip.py [options] packages...".
# It installs pip @PIP_VERSION@ from that wheel, plus the packages ansible-test asks for.
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
WHEELS = sorted(glob.glob(os.path.join(HERE, 'pip-@PIP_VERSION@-*.whl')))
if not WHEELS:
    sys.exit('get_pip stand-in: no pip-@PIP_VERSION@ wheel in %s' % HERE)
sys.path.insert(0, WHEELS[0])

from pip._internal.cli.main import main  # noqa: E402  pylint: disable=wrong-import-position

# get-pip.py's own switches: --no-setuptools / --no-wheel mean "do not add them": drop them here.
ARGS = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel')]
sys.exit(main(['install', '--upgrade', '--force-reinstall'] + ARGS))
