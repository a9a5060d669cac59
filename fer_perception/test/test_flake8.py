# Copyright 2017 Open Source Robotics Foundation, Inc.
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

# The project's style (120 columns, double quotes) instead of ament's defaults.
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'flake8.ini')
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    if importlib.util.find_spec('ament_flake8') is not None:  # colcon test on a ROS machine
        from ament_flake8.main import main_with_errors

        rc, errors = main_with_errors(argv=['--config', CONFIG])
    else:  # plain flake8 (the test extra) with the same configuration, on this package
        if importlib.util.find_spec('flake8') is None:
            pytest.skip('neither ament_flake8 nor flake8 is installed')
        run = subprocess.run([sys.executable, '-m', 'flake8', '--config', CONFIG, PACKAGE_DIR],
                             capture_output=True, text=True)
        rc, errors = run.returncode, run.stdout.splitlines()
    assert rc == 0, \
        'Found %d code style errors / warnings:\n' % len(errors) + \
        '\n'.join(errors)
