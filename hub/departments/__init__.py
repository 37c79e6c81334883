"""Departments and department tasks: "the center blows the whistle, departments report in"."""
