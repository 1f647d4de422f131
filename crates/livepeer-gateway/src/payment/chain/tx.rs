//! TicketBroker transactions for deposit management (`fundDepositAndReserve`, `unlock`,
//! `cancelUnlock`, `withdraw`): estimated (a call that would revert fails here, with the
//! contract's reason, before anything is signed), priced with EIP-1559 fees, signed with the
//! gateway's key, sent, and awaited until their receipt.

use std::fmt::Write as _;
use std::time::Duration;

use alloy::consensus::{SignableTransaction as _, TxEip1559};
use alloy::eips::eip2718::Encodable2718 as _;
use alloy::network::TransactionBuilder as _;
use alloy::primitives::{Bytes, Signature, TxKind};
use alloy::providers::{PendingTransactionError, Provider as _};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall as _;
use livepeer_pm::{Address, B256, LocalSigner, U256};

use super::abi::TicketBroker;
use super::{ChainClient, ChainError};

/// A TicketBroker function that changes the sender's funds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerCall {
    /// `fundDepositAndReserve(deposit, reserve)`, paying `deposit + reserve`.
    Fund {
        /// Added to the deposit, in wei.
        deposit: U256,
        /// Added to the reserve, in wei.
        reserve: U256,
    },
    /// `unlock()`: the funds can be withdrawn after the unlock period.
    Unlock,
    /// `cancelUnlock()`.
    CancelUnlock,
    /// `withdraw()`: deposit and reserve back to the sender, once unlocked.
    Withdraw,
}

impl BrokerCall {
    /// The function's ABI signature.
    #[must_use]
    pub fn signature(&self) -> &'static str {
        match self {
            Self::Fund { .. } => TicketBroker::fundDepositAndReserveCall::SIGNATURE,
            Self::Unlock => TicketBroker::unlockCall::SIGNATURE,
            Self::CancelUnlock => TicketBroker::cancelUnlockCall::SIGNATURE,
            Self::Withdraw => TicketBroker::withdrawCall::SIGNATURE,
        }
    }

    fn data(&self) -> Vec<u8> {
        match *self {
            Self::Fund { deposit, reserve } => TicketBroker::fundDepositAndReserveCall {
                _depositAmount: deposit,
                _reserveAmount: reserve,
            }
            .abi_encode(),
            Self::Unlock => TicketBroker::unlockCall {}.abi_encode(),
            Self::CancelUnlock => TicketBroker::cancelUnlockCall {}.abi_encode(),
            Self::Withdraw => TicketBroker::withdrawCall {}.abi_encode(),
        }
    }

    fn value(&self) -> Option<U256> {
        match *self {
            Self::Fund { deposit, reserve } => deposit.checked_add(reserve),
            _ => Some(U256::ZERO),
        }
    }
}

/// A transaction ready to sign: what `--dry-run` prints.
#[derive(Debug, Clone)]
pub struct PreparedTx {
    /// The sender.
    pub from: Address,
    /// What it calls.
    pub call: BrokerCall,
    /// The unsigned EIP-1559 transaction.
    pub tx: TxEip1559,
}

/// What a mined transaction did.
#[derive(Debug, Clone, Copy)]
pub struct TxOutcome {
    /// Its hash.
    pub hash: B256,
    /// The block it was mined in.
    pub block: Option<u64>,
    /// Gas it used.
    pub gas_used: u64,
}

impl PreparedTx {
    /// The most the transaction can cost: value plus gas limit × max fee per gas.
    #[must_use]
    pub fn max_cost(&self) -> U256 {
        let gas = U256::from(self.tx.gas_limit) * U256::from(self.tx.max_fee_per_gas);
        self.tx.value.saturating_add(gas)
    }

    /// A readable description, every number exact.
    #[must_use]
    pub fn describe(&self) -> String {
        let t = &self.tx;
        let to = match t.to {
            TxKind::Call(to) => to.to_checksum(None),
            TxKind::Create => "(create)".to_owned(),
        };
        let mut out = String::new();
        let _ = writeln!(out, "call:                     TicketBroker.{}", self.call.signature());
        let _ = writeln!(out, "from:                     {}", self.from.to_checksum(None));
        let _ = writeln!(out, "to:                       {to}");
        let _ =
            writeln!(out, "value:                    {} ({} wei)", format_eth(t.value), t.value);
        let _ = writeln!(out, "chain id:                 {}", t.chain_id);
        let _ = writeln!(out, "nonce:                    {}", t.nonce);
        let _ = writeln!(out, "gas limit:                {}", t.gas_limit);
        let _ = writeln!(out, "max fee per gas:          {} wei", t.max_fee_per_gas);
        let _ = writeln!(out, "max priority fee per gas: {} wei", t.max_priority_fee_per_gas);
        let _ = writeln!(out, "max cost:                 {}", format_eth(self.max_cost()));
        let _ = writeln!(out, "data:                     0x{}", hex::encode(&t.input));
        out
    }
}

/// Wei as ETH, exactly (`1.5 ETH`, trailing zeros dropped).
#[must_use]
pub fn format_eth(wei: U256) -> String {
    let unit = U256::from(10u64).pow(U256::from(18));
    let (whole, frac) = (wei / unit, wei % unit);
    if frac.is_zero() {
        return format!("{whole} ETH");
    }
    let frac = format!("{frac:0>18}");
    format!("{whole}.{} ETH", frac.trim_end_matches('0'))
}

/// Parses an amount with its unit: `0.5ETH`, `2 gwei`, `1000wei` (exact; a unit is
/// required, so that wei and ETH are never confused).
pub fn parse_amount(text: &str) -> Result<U256, String> {
    let t = text.trim().to_ascii_lowercase();
    let (number, decimals) = if let Some(n) = t.strip_suffix("gwei") {
        (n, 9)
    } else if let Some(n) = t.strip_suffix("wei") {
        (n, 0)
    } else if let Some(n) = t.strip_suffix("eth") {
        (n, 18)
    } else {
        return Err(format!("{text:?}: give a unit: ETH, gwei or wei (e.g. 0.1ETH)"));
    };
    let number = number.trim();
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(frac.is_empty() || digits(frac)) {
        return Err(format!("{text:?}: not a number"));
    }
    if frac.len() > decimals {
        return Err(format!("{text:?}: more decimals than the unit has"));
    }
    let scaled = format!("{whole}{frac:0<decimals$}");
    U256::from_str_radix(&scaled, 10).map_err(|e| format!("{text:?}: {e}"))
}

impl ChainClient {
    /// Prepares `call` on the TicketBroker at `broker` from `from`: gas estimated (plus a
    /// fifth, as margin), EIP-1559 fees from the node's fee history, the next nonce.
    ///
    /// # Errors
    /// A call that would revert ([`ChainError::Rpc`], with the contract's reason), and the
    /// errors of [`ChainClient::request`].
    pub async fn prepare(
        &self,
        from: Address,
        broker: Address,
        call: BrokerCall,
    ) -> Result<PreparedTx, ChainError> {
        let value = call.value().ok_or_else(|| ChainError::Malformed {
            method: "fundDepositAndReserve",
            detail: "deposit + reserve overflows".to_owned(),
        })?;
        let data = Bytes::from(call.data());
        let request = TransactionRequest::default()
            .with_from(from)
            .with_to(broker)
            .with_value(value)
            .with_input(data.clone());
        let p = self.provider();
        let gas = p.estimate_gas(request).await.map_err(|e| self.classify("eth_estimateGas", e))?;
        let fees =
            p.estimate_eip1559_fees().await.map_err(|e| self.classify("eth_feeHistory", e))?;
        let nonce = p
            .get_transaction_count(from)
            .pending()
            .await
            .map_err(|e| self.classify("eth_getTransactionCount", e))?;
        let chain_id = self.chain_id().await?;
        let tx = TxEip1559 {
            chain_id,
            nonce,
            gas_limit: gas.saturating_add(gas / 5),
            max_fee_per_gas: fees.max_fee_per_gas,
            max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
            to: TxKind::Call(broker),
            value,
            access_list: Default::default(),
            input: data,
        };
        Ok(PreparedTx { from, call, tx })
    }

    /// Signs `prepared` with `signer`, sends it and waits up to `timeout` for its receipt.
    ///
    /// # Errors
    /// [`ChainError::Malformed`] if the key is not the prepared sender's or the transaction
    /// reverted; the node's errors otherwise.
    pub async fn sign_and_send(
        &self,
        signer: &LocalSigner,
        prepared: PreparedTx,
        timeout: Duration,
    ) -> Result<TxOutcome, ChainError> {
        const METHOD: &str = "eth_sendRawTransaction";
        let malformed = |detail: String| ChainError::Malformed { method: METHOD, detail };
        if signer.address() != prepared.from {
            return Err(malformed("the key is not the prepared sender's".to_owned()));
        }
        let hash = prepared.tx.signature_hash();
        let sig = signer.sign_prehash(&hash).map_err(|e| malformed(format!("signing: {e}")))?;
        let signature = Signature::from_bytes_and_parity(&sig.0[..64], sig.0[64] == 28);
        let signed = prepared.tx.into_signed(signature);
        let raw = alloy::consensus::TxEnvelope::from(signed).encoded_2718();
        let pending = self
            .provider()
            .send_raw_transaction(&raw)
            .await
            .map_err(|e| self.classify(METHOD, e))?;
        let tx_hash = *pending.tx_hash();
        let receipt = pending.with_timeout(Some(timeout)).get_receipt().await.map_err(|e| {
            // The node's own failure is shown as every other RPC failure is: without the
            // URL's path, which may hold the provider's API key (reqwest's text has it).
            // The hash stays in it: the transaction was sent, and an operator who does
            // not know it might send another.
            let text = match e {
                PendingTransactionError::TransportError(e) => self.classify(METHOD, e).to_string(),
                other => crate::outbound::scrub(&other.to_string(), &self.url),
            };
            malformed(format!("sent {tx_hash}; waiting for its receipt: {text}"))
        })?;
        if !receipt.status() {
            return Err(malformed(format!("transaction {tx_hash} reverted")));
        }
        Ok(TxOutcome { hash: tx_hash, block: receipt.block_number, gas_used: receipt.gas_used })
    }
}
