"""Reading a .npz archive's array headers without reading the arrays: what
:meth:`pybackprop.nn.Sequential.load` checks before it allocates anything."""
import math
import os
import zipfile

import numpy as np

# Largest expansion of the data in a deflated member (deflate's limit is 1032:1).
_DEFLATE_RATIO = 1100


def npz_path(path):
    """``path`` as ``numpy.savez`` wrote it: a name without the ``.npz`` suffix that
    savez added is found with it (file objects and existing names are kept)."""
    if isinstance(path, (str, os.PathLike)):
        p = os.fspath(path)
        if not os.path.exists(p) and not p.endswith(".npz") and os.path.exists(p + ".npz"):
            return p + ".npz"
    return path


def npz_headers(path):
    """name -> (shape, dtype, fortran_order) of every .npy member of the zip at ``path``,
    read from the headers alone. ValueError if ``path`` is not a zip archive, a header is
    malformed, or a member's declared size does not match the bytes that hold it (the data
    after the header, as stored; at most ``_DEFLATE_RATIO`` times the compressed bytes;
    those within the archive)."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path} is not a .npz archive: {e}") from None
    with zf:
        fp = zf.fp
        end = fp.seek(0, os.SEEK_END)
        headers = {}
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[:-4]
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ValueError(f"{path}: member {name!r} uses a compression numpy "
                                 "does not write")
            limit = info.compress_size * (1 if info.compress_type == zipfile.ZIP_STORED
                                          else _DEFLATE_RATIO)
            try:
                with zf.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
                    elif version == (2, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
                    else:
                        raise ValueError(f"format version {version} is not written by save")
                    offset = member.tell()
            except (ValueError, EOFError, zipfile.BadZipFile) as e:
                raise ValueError(f"{path}: member {name!r} is not a valid .npy: {e}") \
                    from None
            if dtype.hasobject:
                raise ValueError(f"{path}: member {name!r} holds Python objects")
            nbytes = math.prod(shape) * dtype.itemsize
            if (info.file_size != offset + nbytes or info.file_size > limit
                    or info.header_offset + info.compress_size > end):
                raise ValueError(f"{path}: member {name!r} declares shape {shape} and dtype "
                                 f"{dtype} ({nbytes} bytes), which the archive does not hold")
            headers[name] = (shape, dtype, fortran)
    return headers
