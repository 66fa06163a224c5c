# Fixtures building tiny dataset archives in the real formats; see
# dataset_archives.py (a uniquely named module, importable from the tests).
from dataset_archives import (aircraft_tgz, cars_files,  # noqa: F401
                              cifar100_tarball, cub_tgz, imagenet_archives,
                              run_cli, tiny_zip)
