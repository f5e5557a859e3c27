# placeholder: the sandbox fixtures are written with the sandbox
