import pytest

from appliance.errors import ApplianceError
from appliance.factory.image.commands import run


def test_a_failing_step_names_itself_and_what_the_tool_said():
    with pytest.raises(ApplianceError, match=r"image build, making things: .* exited 3: it broke"):
        run(["sh", "-c", "echo it broke >&2; exit 3"], "making things")


def test_a_missing_tool_is_one_line():
    with pytest.raises(ApplianceError, match="image build, x: cannot run no-such-tool-here"):
        run(["no-such-tool-here"], "x")
