"""A JSON parser that answers 400 to any JSON Python cannot read, not 500."""

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, with nesting too deep for Python's parser as a 400 too.

    DRF turns ``ValueError`` into a 400 but lets ``RecursionError`` (``[[[[…`` a hundred
    thousand deep) through as a 500.
    """

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as error:
            raise ParseError("JSON parse error - nested too deeply") from error
