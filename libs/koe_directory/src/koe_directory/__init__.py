"""Pages and divisions, shared by the feedback service (which division codes
exist) and the notifier (who to email about a page)."""

from koe_directory.divisions import Directory, DirectoryError, Division, load_directory
from koe_directory.pages import canonical_url, page_id_for_url

__all__ = [
    "Directory",
    "DirectoryError",
    "Division",
    "canonical_url",
    "load_directory",
    "page_id_for_url",
]
