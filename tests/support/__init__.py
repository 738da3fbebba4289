"""Test helpers shared by the test suites: AWS-shaped events, a recorder for posts to
WebSocket connections, Lambda context and clock fakes, token minting."""
