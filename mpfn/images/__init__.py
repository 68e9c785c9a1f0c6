"""OCI images of mpfn's parts, built with the machine's own builder (`mpfn build`).

`catalog` says what each image holds and how it starts, `containerfile` renders its build
file, `base` makes the Debian base offline, `layers` installs the Python layers on the
host, `builder` speaks to podman, buildah or docker, and `build` puts them together.
"""
