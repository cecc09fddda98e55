"""An unexpected error in a route (issue 10, finding 7): the server used to send its 500 and
then close the connection under the client, so an agent on a kept-alive connection read no
answer and logged the control plane unreachable while it was up. Now the answer is a complete
ARM error and the connection stays usable; the traceback is logged once, by the server."""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import pytest
from armenv import HC, ArmEnv, arm_environment
from conftest import ca_context
from sqlalchemy import text

GROUP = "errors"


@pytest.fixture(params=["sqlite"])
def arm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArmEnv]:
    with arm_environment(request, tmp_path_factory) as env:
        env.add_group(GROUP)
        env.add_machines(GROUP, ["doomed"])
        yield env


def test_a_500_is_a_whole_answer_and_the_connection_stays_usable(arm: ArmEnv) -> None:
    with arm.db.session() as session:  # a damaged schema: deleting a machine now fails unexpectedly
        session.execute(text("DROP TABLE operations"))
    connection = http.client.HTTPSConnection(
        "127.0.0.1", arm.server.port, context=ca_context(arm.server.ca_file)
    )
    headers = {"Authorization": f"Bearer {arm.callers['owner'].token}"}
    try:
        connection.request("DELETE", arm.machine(GROUP, "doomed") + f"?api-version={HC}", headers=headers)
        reply = connection.getresponse()
        body = reply.read()
        assert reply.status == 500, body
        assert b'"code":"InternalServerError"' in body
        first_socket = connection.sock
        assert first_socket is not None, "the server closed the connection after its 500"
        connection.request("GET", arm.machine(GROUP, "doomed") + f"?api-version={HC}", headers=headers)
        again = connection.getresponse()
        assert again.status == 200, again.read()
        again.read()
        assert connection.sock is first_socket, "the client had to open a new connection"
    finally:
        connection.close()
    log = arm.server.log()
    assert log.count(": unexpected error") == 1, log  # logged once, with its traceback
    assert "no such table: operations" in log
    assert "Exception in ASGI application" not in log, "the exception reached the HTTP server"
