from setuptools import find_packages, setup

PACKAGE = "unihm_bringup"

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
    description="Launch files, parameters, executive and driver adapters of UniHM.",
    license="Apache-2.0",
    entry_points={
    },
)
