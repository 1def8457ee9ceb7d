"""How workers are launched and scaled: one worker group per stage queue."""
