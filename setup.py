"""pip install path for recon_ros (colcon builds the ROS package through CMakeLists.txt)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "recon_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
        (f"share/{PACKAGE}/msg", glob("msg/*.msg")),
        (f"share/{PACKAGE}/srv", glob("srv/*.srv")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "torch==2.13.0",
        "opencv-python-headless>=4.8",
        "open3d-cpu>=0.18; platform_machine=='x86_64'",
        "open3d>=0.18; platform_machine!='x86_64'",
        "rosbags==0.11.9",
        "mcap>=1.1",  # zstandard/lz4 for compressed chunks of damaged recordings (io/mcap_salvage.py)
        "pillow>=10",
        "pyyaml>=6",
        "tqdm>=4.60",
        "psutil>=5.9",
    ],
    extras_require={
        "onnx": ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.1"],
        "tensorrt": ["tensorrt>=10"],
        "test": [
            "pytest>=7,<9",  # launch_testing's pytest plugin breaks every run under pytest 9
            "ruff>=0.4",
            "mcap>=1.1",
            "mcap-ros2-support>=0.5",
            "onnx>=1.16",
            "onnxruntime>=1.18",
            "onnxscript>=0.1",
            "scikit-image>=0.19",  # ships Middlebury's Motorcycle stereo pair (real-pair depth tests)
        ],
    },
    entry_points={
        "console_scripts": [
            "recon-ros = recon_ros.cli:main",
            "recon_node = recon_ros.nodes.recon_node:main",
        ]
    },
    zip_safe=False,
    license="Apache-2.0",
    description="Multi-camera 3D reconstruction for ROS 2 with MV-DUSt3R+ and DiffMVS",
)
