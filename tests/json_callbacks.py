"""What the tests of the JSON callback protocols (specs 001 and 004) share: sending a body as
JSON, and reading the answer."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from ingress.bodies import parse_json_object
from ingress.verdicts import Rejection

if TYPE_CHECKING:
    from starlette.responses import Response

    from ingress.protocols.base import Claim, JsonCallbackProtocol
    from ingress.verdicts import Verdict


def verified(protocol: JsonCallbackProtocol, body: dict[str, object]) -> Claim:
    """The claim `protocol` makes of `body`, sent as JSON."""
    return protocol.verify(parse_json_object(json.dumps(body).encode()))


def refusal(protocol: JsonCallbackProtocol, body: dict[str, object]) -> Verdict:
    """The verdict `protocol` refuses `body` with; the test fails if it is accepted."""
    with pytest.raises(Rejection) as raised:
        verified(protocol, body)
    return raised.value.verdict


def answer_body(response: Response) -> Any:
    """The decoded body of an answer: always HTTP 200, the code is in the body."""
    assert response.status_code == 200
    return json.loads(bytes(response.body))
