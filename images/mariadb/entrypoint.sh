#!/bin/bash
# Entry point of onebox-test/mariadb: on the first start (empty data directory)
# create the system tables and write an init file from the MYSQL_* variables,
# then exec the server in the foreground as PID 1 (it handles SIGTERM itself).
#
#   MYSQL_ROOT_PASSWORD        root's password (root@localhost and root@%), or
#   MYSQL_ALLOW_EMPTY_PASSWORD=yes / MYSQL_RANDOM_ROOT_PASSWORD=yes
#   MYSQL_DATABASE             a database to create
#   MYSQL_USER, MYSQL_PASSWORD a user with all privileges on MYSQL_DATABASE
# Each password also accepts NAME_FILE (docker secrets).
set -euo pipefail

log() { printf '%s [Entrypoint] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }

# file_env NAME: NAME or NAME_FILE, not both (as the official images do).
file_env() {
	local var=$1 file_var="${1}_FILE"
	if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
		log "error: both $var and $file_var are set"
		exit 1
	fi
	if [ -n "${!file_var:-}" ]; then
		export "$var"="$(<"${!file_var}")"
	fi
}

# sql_string VALUE prints VALUE as a single-quoted SQL string literal.
sql_string() {
	local s=${1//\\/\\\\}
	printf "'%s'" "${s//\'/\'\'}"
}

# sql_ident VALUE prints VALUE as a backquoted SQL identifier.
sql_ident() { printf '`%s`' "${1//\`/\`\`}"; }

if [ "${1:-}" = mariadbd ] || [ "${1:-}" = mysqld ]; then
	shift
	datadir=/var/lib/mysql
	mkdir -p /run/mysqld "$datadir"
	chown mysql:mysql /run/mysqld "$datadir"
	args=(--user=mysql --datadir="$datadir" --bind-address=0.0.0.0 --skip-name-resolve)

	if [ ! -d "$datadir/mysql" ]; then
		file_env MYSQL_ROOT_PASSWORD
		file_env MYSQL_PASSWORD
		if [ -z "${MYSQL_ROOT_PASSWORD:-}" ] && [ -z "${MYSQL_ALLOW_EMPTY_PASSWORD:-}" ] && [ -z "${MYSQL_RANDOM_ROOT_PASSWORD:-}" ]; then
			log "error: database is uninitialized and no root password option is set"
			log "set one of MYSQL_ROOT_PASSWORD, MYSQL_ALLOW_EMPTY_PASSWORD or MYSQL_RANDOM_ROOT_PASSWORD"
			exit 1
		fi
		if [ -n "${MYSQL_RANDOM_ROOT_PASSWORD:-}" ]; then
			MYSQL_ROOT_PASSWORD=$(head -c 18 /dev/urandom | base64)
			log "GENERATED ROOT PASSWORD: $MYSQL_ROOT_PASSWORD"
		fi
		if [ "${MYSQL_USER:-}" = root ]; then
			log "error: MYSQL_USER=root is not allowed; use MYSQL_ROOT_PASSWORD for root"
			exit 1
		fi

		log "initializing the data directory"
		mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db \
			--auth-root-authentication-method=normal >/dev/null

		# The init file runs once, before the server accepts connections, so
		# nobody can log in before the accounts are set. MariaDB reads it one
		# statement per line.
		init=/run/mysqld/init.sql
		{
			# install-db also creates passwordless root accounts on the
			# loopback addresses and the host name; only root@localhost
			# (the socket) and root@% (with the password) stay.
			echo "DROP USER IF EXISTS 'root'@'127.0.0.1';"
			echo "DROP USER IF EXISTS 'root'@'::1';"
			echo "DELETE FROM mysql.global_priv WHERE User = '' OR (User = 'root' AND Host <> 'localhost');"
			echo "DELETE FROM mysql.proxies_priv WHERE Host <> 'localhost';"
			echo "FLUSH PRIVILEGES;"
			pw=$(sql_string "${MYSQL_ROOT_PASSWORD:-}")
			echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $pw;"
			echo "CREATE USER 'root'@'%' IDENTIFIED BY $pw;"
			echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
			if [ -n "${MYSQL_DATABASE:-}" ]; then
				echo "CREATE DATABASE IF NOT EXISTS $(sql_ident "$MYSQL_DATABASE");"
			fi
			if [ -n "${MYSQL_USER:-}" ] && [ -n "${MYSQL_PASSWORD:-}" ]; then
				echo "CREATE USER $(sql_string "$MYSQL_USER")@'%' IDENTIFIED BY $(sql_string "$MYSQL_PASSWORD");"
				if [ -n "${MYSQL_DATABASE:-}" ]; then
					echo "GRANT ALL ON $(sql_ident "$MYSQL_DATABASE").* TO $(sql_string "$MYSQL_USER")@'%';"
				fi
			fi
		} >"$init"
		chown mysql:mysql "$init"
		chmod 600 "$init"
		args+=(--init-file="$init")
		log "first start: accounts and database come from $init"
	fi
	exec mariadbd "${args[@]}" "$@"
fi
exec "$@"
