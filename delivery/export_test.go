package delivery

// AppendEvent exposes appendEvent to the tests.
var AppendEvent = appendEvent
