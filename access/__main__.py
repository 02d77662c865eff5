"""Manage who may log in to prefloop; works while the app runs (it re-reads the file on the next request).

    python -m access --users users.json add ada --role admin      # the first admin: logins on with --users
    python -m access --users users.json add bob                   # a labeler
    python -m access --users users.json passwd bob                # reset a password
    python -m access --users users.json role bob admin
    python -m access --users users.json remove bob
    python -m access --users users.json list

Passwords are asked twice at the terminal; `--password-stdin` reads one line from standard input instead
(for scripts). They are stored hashed (Argon2id), never in clear.
"""

from __future__ import annotations

import argparse
import getpass
import sys

DEFAULT_USERS = "users.json"


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise SystemExit("error: the two passwords differ; nothing was changed.")
    return first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m access", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", default=DEFAULT_USERS, help="the users file the app is started with")
    users_too = argparse.ArgumentParser(add_help=False)  # --users after the subcommand as well as before it
    users_too.add_argument("--users", default=argparse.SUPPRESS, help="the users file")
    stdin_too = argparse.ArgumentParser(add_help=False)
    stdin_too.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add a user", parents=[users_too, stdin_too])
    add.add_argument("name")
    add.add_argument("--role", default="labeler", choices=["labeler", "admin"])
    sub.add_parser("passwd", help="set a user's password", parents=[users_too, stdin_too]).add_argument("name")
    role = sub.add_parser("role", help="change a user's role", parents=[users_too])
    role.add_argument("name")
    role.add_argument("role", choices=["labeler", "admin"])
    sub.add_parser("remove", help="remove a user", parents=[users_too]).add_argument("name")
    sub.add_parser("list", help="list users and roles", parents=[users_too])
    args = parser.parse_args(argv)

    from access.users import UsersError, UsersFile

    users = UsersFile(args.users)
    try:
        if args.command == "add":
            users.add(args.name, read_password(args.password_stdin), args.role)
            print(f"added {args.role} {args.name!r} to {args.users}")
        elif args.command == "passwd":
            users.set_password(args.name, read_password(args.password_stdin))
            print(f"password of {args.name!r} changed")
        elif args.command == "role":
            users.set_role(args.name, args.role)
            print(f"{args.name!r} is now {args.role}")
        elif args.command == "remove":
            users.remove(args.name)
            print(f"removed {args.name!r}")
        else:
            for user in users.users():
                print(f"{user.name}\t{user.role}\tsince {user.created}")
    except UsersError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
