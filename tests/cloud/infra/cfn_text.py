"""Reading the synthesized CloudFormation template back as text, for the tests that judge an ARN
or a topic the stack writes (the infra tests and the contract's)."""

from __future__ import annotations


def text_of(value) -> str:
    """A CloudFormation string with its Fn::Join and partition Ref written out (aws)."""
    if isinstance(value, dict) and "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(text_of(part) for part in parts)
    if value == {"Ref": "AWS::Partition"}:
        return "aws"
    assert isinstance(value, str), value
    return value
