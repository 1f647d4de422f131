//! TicketBroker transactions (deposit management): filled in by the deposit subcommands.
