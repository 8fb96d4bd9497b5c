"""The error codes are public, typed, and the only codes a DeliveryError carries."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import cdp_logging
from cdp_logging import errors
from cdp_logging._core import errors as internal

PACKAGE = Path(cdp_logging.__file__).parent


class TestPublicCodes:
    def test_every_constant_is_in_codes_and_in_the_type(self) -> None:
        """A code added as a constant but not to ErrorCode (or the reverse) fails here."""
        constants = {
            value
            for name, value in vars(internal).items()
            if name.isupper() and isinstance(value, str)
        }
        assert constants == set(errors.CODES) == set(get_args(errors.ErrorCode))

    def test_the_public_module_names_every_code(self) -> None:
        """cdp_logging.errors exports each code under its constant's name."""
        for code in errors.CODES:
            assert code == getattr(errors, code.upper())
        assert errors.DeliveryError is cdp_logging.DeliveryError

    def test_no_code_is_written_as_a_bare_string_where_an_error_is_made(self) -> None:
        """DeliveryError("...", ...) with a literal code outside the codes is a typo."""
        literal_codes = set()
        for path in PACKAGE.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "id", None) == "DeliveryError"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    literal_codes.add(node.args[0].value)
        assert set() == literal_codes - set(errors.CODES)
