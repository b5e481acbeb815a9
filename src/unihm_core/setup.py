from setuptools import find_packages, setup

PACKAGE = "unihm_core"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="UniHM maintainers",
    maintainer_email="unihm@example.org",
    description="Shared ROS-free core of UniHM: assets lookup, the unihm CLI, test support.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": ["unihm = unihm_core.cli:main"],
        "unihm.commands": ["doctor = unihm_core.cli:register_doctor"],
        "pytest11": ["unihm_ros_isolation = unihm_core.testing"],
    },
)
