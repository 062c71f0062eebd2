"""Prints a greeting from the Python runtime built from Debian packages."""

import sys


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "berth"
    print(f"Hello, {name}, from Python {sys.version_info.major}.{sys.version_info.minor}")


if __name__ == "__main__":
    main()
