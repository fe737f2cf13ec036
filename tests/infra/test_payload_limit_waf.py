"""With WAF on, a body too large for Lambda's event gets a 413 in the kit's shape instead of AWS's 500."""

from __future__ import annotations

import json
import re

from hypothesis import given
from hypothesis import strategies as st

from stacks.model_api import AT_LEAST_4_500_000, AT_LEAST_6_000_000, PAYLOAD_TOO_LARGE_BODY
from tests.infra.conftest import Synth, resources


@given(st.integers(min_value=0, max_value=10**12))
def test_the_content_length_patterns_are_thresholds(length: int) -> None:
    assert bool(re.fullmatch(AT_LEAST_6_000_000, str(length))) == (length >= 6_000_000)
    assert bool(re.fullmatch(AT_LEAST_4_500_000, str(length))) == (length >= 4_500_000)


def test_the_web_acl_answers_an_oversized_body_with_a_413_first(synth_variant: Synth) -> None:
    [acl] = resources(synth_variant.merged_json, "AWS::WAFv2::WebACL").values()
    props = acl["Properties"]
    rules = sorted(props["Rules"], key=lambda r: r["Priority"])
    limit = rules[1]
    assert limit["Name"] == "LambdaPayloadLimit"  # after the rate limit, before the managed rule groups
    assert [r["Priority"] for r in rules] == list(range(len(rules)))
    custom = limit["Action"]["Block"]["CustomResponse"]
    assert custom["ResponseCode"] == 413
    body = props["CustomResponseBodies"][custom["CustomResponseBodyKey"]]
    assert body["ContentType"] == "APPLICATION_JSON"
    assert json.loads(body["Content"])["error"]["code"] == "payload_too_large"
    assert body["Content"] == PAYLOAD_TOO_LARGE_BODY
    text = json.dumps(limit["Statement"])
    assert text.count('"Name": "content-length"') == 2
    assert '"SearchString": "application/x-npy"' in text
