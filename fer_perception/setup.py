"""ament_python package and pip distribution `fer-perception` (one setup.py for both)."""

import os
from glob import glob

from setuptools import find_packages, setup

package_name = "fer_perception"
here = os.path.dirname(os.path.abspath(__file__))


def _rel(pattern):
    return sorted(os.path.relpath(p, here) for p in glob(os.path.join(here, pattern)))


data_files = [
    ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
    ("share/" + package_name, ["package.xml"]),
    ("share/" + package_name + "/launch", _rel("launch/*.py")),
    ("share/" + package_name + "/config", _rel("config/*.yaml")),
    ("share/" + package_name + "/rviz", _rel("rviz/*.rviz")),
]
# A wheel built outside a ROS workspace carries the message definitions it reads with rosbags
# (fer_perception.msgdefs looks here last; under ROS the ament index comes first).
_msgs = _rel("../fer_perception_msgs/msg/*.msg")
if _msgs and not os.environ.get("AMENT_PREFIX_PATH"):
    data_files.append(("share/fer_perception_msgs/msg", _msgs))

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={package_name: ["weights/*.pt", "weights/*.json", "data/*.json", "data/*.xml"]},
    include_package_data=True,
    data_files=[(d, f) for d, f in data_files if f],
    python_requires=">=3.10",
    install_requires=[
        "setuptools",
        "numpy>=1.21",
        "opencv-python-headless>=4.5,<5",
        "rosbags>=0.10",
        "torch>=1.13",
        "h5py>=3.0",
        "matplotlib>=3.5",
        "rich>=12",
        "tqdm>=4.60",
        "PyYAML>=5.4",
        "scipy>=1.7",
        "Pillow>=8",
        "loguru>=0.7",
        "onnxruntime>=1.14",
        "onnx>=1.13",
        "numba>=0.56",  # compiled IF kernels of the int8 SNN runtime (runtime/spike_kernels.py); optional at run time
    ],
    extras_require={
        # SpikingJelly with all its declared dependencies (pulls torchvision/torchaudio): for machines with a
        # matching CUDA torch/torchvision pair. On a CPU torch, `make` installs it with --no-deps instead.
        "snn": [
            'spikingjelly==0.0.0.0.14; python_version < "3.11"',
            'spikingjelly>=2.0,<2.1; python_version >= "3.11"',
        ],
        "train": ["lightning>=2.0", "tensorboard>=2.10"],
        "test": ["pytest>=7", "hypothesis>=6.50", "flake8>=6", "pydocstyle>=6"],
    },
    zip_safe=True,
    maintainer="fer_perception team",
    maintainer_email="team@fer-perception.dev",
    description="Facial expression (Spiking-FER on event cameras, DAN on frames), age and gender for ROS 2.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "fer-perception = fer_perception.cli:main",
            "fer_perception_node = fer_perception.ros.node:main",
        ],
    },
)
