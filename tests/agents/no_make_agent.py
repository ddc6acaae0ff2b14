"""An agent file that forgot make_agent (a test fixture for the harness's error message)."""


class Agent:
    def act(self, obs, *, explore):
        return [0.0, 0.0]
