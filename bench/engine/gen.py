#!/usr/bin/env python3
"""Generates the engine benchmark workspace: N images, each one `oci_layer`
over its package's source files packed into one `oci_image_build`.

Default: 200 images from 2,000 source files, ~500 MB in all. The bytes come
from a seeded generator, so every run builds the same workspace.
"""

import argparse
import os
import random


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", help="directory to create the workspace in (must not exist)")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--files-per-image", type=int, default=10)
    parser.add_argument("--total-mb", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    os.makedirs(args.root)
    rng = random.Random(args.seed)
    files = args.images * args.files_per_image
    mean = args.total_mb * 1024 * 1024 // files
    with open(os.path.join(args.root, "WORKSPACE.star"), "w") as f:
        f.write('workspace(name = "bench")\n')
    for image in range(args.images):
        package = os.path.join(args.root, f"svc{image:03d}")
        os.makedirs(os.path.join(package, "src", "lib"))
        for index in range(args.files_per_image):
            # Sizes vary around the mean (half to one and a half times it).
            size = rng.randint(mean // 2, mean * 3 // 2)
            sub = "lib" if index % 2 else ""
            path = os.path.join(package, "src", sub, f"file{index:02d}.bin")
            with open(path, "wb") as f:
                f.write(rng.randbytes(size))
        with open(os.path.join(package, "BUILD.star"), "w") as f:
            f.write(
                'oci_layer(name = "files", srcs = glob(["src/**"]))\n'
                "\n"
                'oci_image_build(name = "image", packages = [":files"])\n'
            )


if __name__ == "__main__":
    main()
