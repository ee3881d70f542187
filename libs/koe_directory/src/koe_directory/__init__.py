"""Pages, divisions and the survey, shared by the services: which division codes
exist and who to email about a page, and the questions every page asks."""

from koe_directory.divisions import Directory, DirectoryError, Division, load_directory
from koe_directory.pages import canonical_url, page_id_for_url
from koe_directory.survey import ANSWERS, QUESTION_KEYS, QUESTIONS, QUESTIONS_BY_KEY, Question

__all__ = [
    "ANSWERS",
    "QUESTIONS",
    "QUESTIONS_BY_KEY",
    "QUESTION_KEYS",
    "Directory",
    "DirectoryError",
    "Division",
    "Question",
    "canonical_url",
    "load_directory",
    "page_id_for_url",
]
