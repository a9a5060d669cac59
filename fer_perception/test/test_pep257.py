# Copyright 2015 Open Source Robotics Foundation, Inc.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

import importlib.util
import os
import subprocess
import sys

import pytest

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The project's docstring style: summary on the first line (so D213, not D212), Google-style sections,
# docstrings not required on every definition.
IGNORE = ['D100', 'D101', 'D102', 'D103', 'D104', 'D105', 'D106', 'D107', 'D203', 'D205', 'D208', 'D209',
          'D213', 'D301', 'D400', 'D401', 'D403', 'D404', 'D406', 'D407', 'D411', 'D413', 'D415', 'D417']


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    if importlib.util.find_spec('ament_pep257') is not None:  # colcon test on a ROS machine
        from ament_pep257.main import main

        rc, out = main(argv=['--ignore', *IGNORE, '--', '.', 'test']), ''
    else:  # pydocstyle (the test extra), which ament_pep257 wraps, with the same choices
        if importlib.util.find_spec('pydocstyle') is None:
            pytest.skip('neither ament_pep257 nor pydocstyle is installed')
        paths = [os.path.join(PACKAGE_DIR, d) for d in ('fer_perception', 'test', 'launch', 'setup.py')]
        run = subprocess.run([sys.executable, '-m', 'pydocstyle', '--ignore=' + ','.join(IGNORE), *paths],
                             capture_output=True, text=True)
        rc, out = run.returncode, run.stdout
    assert rc == 0, 'Found code style errors / warnings\n' + out
