"""The hot path's driver-level connections (``vault.db.Driver``)."""

from __future__ import annotations

import pytest

from vault.db import Database


@pytest.mark.parametrize("values", [
    [], ["sub_plain-._~9"], ["", "NULL", "null", "a,b", "{x}", 'say "hi"', "back\\slash",
                              "two words", "new\nline", "ünïcode", "'quote'"],
])
def test_a_list_parameter_holds_any_text_exactly(database: Database, values: list[str]) -> None:
    sql = {"sqlite": "SELECT value FROM json_each(:values)",
           "postgresql": "SELECT unnest(CAST(:values AS text[]))"}
    with database.driver() as db:
        found = [row[0] for row in db.rows(sql[db.dialect], {"values": db.many(values)})]
    assert found == values
