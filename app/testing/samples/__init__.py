"""Realistic pushes of every type WeChat sends, as recorded, one XML file each.

::

    from app.testing.samples import sample, sample_names

    sample("text")                   # text.xml
    sample("subscribe")              # event_subscribe.xml: an event by its name, in any case
    sample("MASSSENDJOBFINISH")      # event_masssendjobfinish.xml

A sample is posted as recorded, ``MsgId`` and ``CreateTime`` included; post it through
:func:`app.testing.fresh_push` (as the ``wechat_client`` fixture does) to have it taken
as a new push rather than a repeat of the last one.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

__all__ = ["sample", "sample_names", "sample_path"]


def sample_names() -> list[str]:
    """Every sample's name (its file name without ``.xml``), sorted."""
    return sorted(entry.name.removesuffix(".xml") for entry in _folder().iterdir() if entry.name.endswith(".xml"))


def sample_path(name: str) -> Path:
    """The file of the sample called ``name``: a file name with or without ``.xml``, or an event name.

    Raises :class:`LookupError` naming the samples there are when there is none such.
    """
    names = sample_names()
    stem = name.strip().removesuffix(".xml").lower()
    for candidate in (stem, f"event_{stem}"):
        if candidate in names:
            return Path(str(_folder().joinpath(f"{candidate}.xml")))
    raise LookupError(f"no sample push called {name!r}; there are: {', '.join(names)}")


def sample(name: str) -> bytes:
    """The XML of the sample called ``name`` (see :func:`sample_path`)."""
    return sample_path(name).read_bytes()


def _folder() -> Traversable:
    return resources.files(__name__)
