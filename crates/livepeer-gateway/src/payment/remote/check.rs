//! A remote signer's payment, checked before any orchestrator sees it.

use livepeer_pm::{Address, ExpirationParams, TicketParams, decode_payment_header};
use livepeer_proto::net::TicketSenderParams;

use crate::payment::terms::{PayError, PaymentLimits};

/// Payments of more tickets than this have their signatures recovered on a blocking thread.
/// One recovery takes about 0.1 ms; the hundred a signer makes at once would hold a serving
/// thread, and every connection it serves, for some 10 ms. One to a few (the usual payment)
/// cost less than the hop to another thread.
const INLINE_SIGNATURES: usize = 4;

/// The tickets of a signer's payment, checked to be what was asked for: at most
/// `max_tickets`, of `params` (the orchestrator's: its recipient, face value, win probability
/// and random hash), each signed by the payment's sender, who is `sender` (the signer's
/// identity) when known, and within this gateway's EV `limits` ([`check_ev`]). A payment that
/// is not would be refused by the orchestrator as invalid, which the verdict table takes for
/// the orchestrator's failure: checked here, it is the signer's, and nobody is penalised.
pub(in crate::payment) async fn check_payment(
    header: &str,
    params: &TicketParams,
    max_tickets: u32,
    sender: Option<Address>,
    limits: &PaymentLimits,
) -> Result<u32, PayError> {
    let payment = decode_payment_header(header).map_err(|e| refused(&e.to_string()))?;
    let tickets = u32::try_from(payment.ticket_sender_params.len()).unwrap_or(u32::MAX);
    if tickets > max_tickets {
        return Err(refused(&format!("{tickets} tickets, over the {max_tickets} asked for")));
    }
    if tickets == 0 {
        return Ok(0);
    }
    check_ev(params, tickets, limits)?;
    // The orchestrator rebuilds each ticket from the params the payment names: they must be
    // its own in every field (the expiration params travel apart, checked with the
    // signatures), or it refuses the tickets as invalid.
    let named = payment.ticket_params.as_ref().map(TicketParams::from_proto);
    let ours = named.and_then(Result::ok).is_some_and(|mut named| {
        named.expiration_params = params.expiration_params;
        named == *params
    });
    if !ours {
        return Err(refused("tickets of other ticket params than the orchestrator's"));
    }
    let mut nonces: Vec<u32> =
        payment.ticket_sender_params.iter().map(|t| t.sender_nonce).collect();
    nonces.sort_unstable();
    if nonces.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(refused("tickets that share a sender nonce"));
    }
    let signer = <[u8; 20]>::try_from(payment.sender.as_slice())
        .map(Address::from)
        .map_err(|_| refused("no 20-byte sender"))?;
    if sender.is_some_and(|expected| expected != signer) {
        return Err(refused("a sender other than the signer's identity"));
    }
    let expiration = payment
        .expiration_params
        .as_ref()
        .map(ExpirationParams::from_proto)
        .ok_or_else(|| refused("tickets without expiration params"))?
        .map_err(|e| refused(&e.to_string()))?;
    let signed = Signed { params: *params, signer, expiration };
    let sender_params = payment.ticket_sender_params;
    if sender_params.len() <= INLINE_SIGNATURES {
        signed.verify(&sender_params)?;
    } else {
        tokio::task::spawn_blocking(move || signed.verify(&sender_params))
            .await
            .map_err(|e| PayError::Internal(format!("checking a signer's tickets: {e}")))??;
    }
    Ok(tickets)
}

/// Refuses a signer's payment of `tickets` tickets of `params` above the gateway's own EV
/// limits (`--max-ticket-ev`, `--max-total-ev`), as its local key would: the signer checks
/// its own, but an orchestrator's params that a lax or misconfigured signer accepts are not
/// paid on that alone.
fn check_ev(params: &TicketParams, tickets: u32, limits: &PaymentLimits) -> Result<(), PayError> {
    if tickets == 0 {
        return Ok(());
    }
    let ev = params.ev();
    if ev > livepeer_pm::Ratio::from_u256(limits.max_ticket_ev) {
        let why =
            format!("ticket EV {} above the max ticket EV {}", ev.floor(), limits.max_ticket_ev);
        return Err(refused(&why));
    }
    let total = ev.checked_mul_u64(u64::from(tickets)).map_err(|e| refused(&e.to_string()))?;
    if total > livepeer_pm::Ratio::from_u256(limits.max_total_ev) {
        let why = format!(
            "{tickets} tickets of EV {} above the max total EV {}",
            ev.floor(),
            limits.max_total_ev
        );
        return Err(refused(&why));
    }
    Ok(())
}

/// What every ticket of one payment shares.
struct Signed {
    params: TicketParams,
    signer: Address,
    expiration: ExpirationParams,
}

impl Signed {
    /// Each ticket's signature recovers to the payment's sender over these params.
    fn verify(&self, sender_params: &[TicketSenderParams]) -> Result<(), PayError> {
        for sp in sender_params {
            let ticket = self.params.ticket(self.signer, sp.sender_nonce, &self.expiration);
            if !ticket.verify_signature(&sp.sig) {
                let why = format!(
                    "ticket {} is not signed by its sender for these params",
                    sp.sender_nonce
                );
                return Err(refused(&why));
            }
        }
        Ok(())
    }
}

/// The signer's payment refused for `why`.
fn refused(why: &str) -> PayError {
    PayError::Refused(format!("remote signer payment: {why}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use livepeer_pm::{U256, payment_header_value};
    use livepeer_proto::net;

    use super::super::tests::params;
    use super::*;

    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    /// A signer's payment of `tickets` tickets of `params`, signed with `KEY`.
    fn header(params: &TicketParams, tickets: u32) -> String {
        let signer = livepeer_pm::LocalSigner::from_hex(KEY).unwrap();
        let expiration = livepeer_pm::ExpirationParams::default();
        let mut session = livepeer_pm::SenderSession::new(*params, expiration);
        let batch = session.create_batch(&signer, tickets).unwrap();
        let payment =
            livepeer_pm::build_payment(signer.address(), &Default::default(), Some(&batch));
        payment_header_value(&payment.unwrap())
    }

    /// `header`'s payment of `n` tickets, changed by `spoil`.
    fn spoiled(params: &TicketParams, n: u32, spoil: impl FnOnce(&mut net::Payment)) -> String {
        let mut payment = livepeer_pm::decode_payment_header(&header(params, n)).unwrap();
        spoil(&mut payment);
        payment_header_value(&payment)
    }

    #[test]
    fn a_signer_payment_above_the_gateway_s_ev_limits_is_refused() {
        let ours = params(1);
        let ev = livepeer_pm::U256::from(u64::try_from(ours.ev().ceil()).unwrap());
        let limits = |ticket, total| PaymentLimits {
            deposit_multiplier: 1,
            max_ticket_ev: ticket,
            max_total_ev: total,
        };
        let three = ev * livepeer_pm::U256::from(3u8);
        assert!(check_ev(&ours, 3, &limits(ev, three)).is_ok());
        let e = check_ev(&ours, 4, &limits(ev, three)).unwrap_err();
        assert!(e.to_string().contains("above the max total EV"), "{e}");
        let below = ev - livepeer_pm::U256::from(1u8);
        let e = check_ev(&ours, 1, &limits(below, three)).unwrap_err();
        assert!(e.to_string().contains("above the max ticket EV"), "{e}");
        assert!(check_ev(&ours, 0, &limits(below, below)).is_ok());
    }

    #[tokio::test]
    async fn a_signer_payment_is_sent_only_as_asked_for() {
        let ours = params(1);
        let me = Some(livepeer_pm::LocalSigner::from_hex(KEY).unwrap().address());
        let check = |h: String, max, sender| async move {
            check_payment(&h, &ours, max, sender, &PaymentLimits::default()).await
        };
        assert_eq!(check(header(&ours, 3), 3, me).await.unwrap(), 3);
        assert_eq!(check(header(&ours, 3), 3, None).await.unwrap(), 3);
        assert_eq!(check(header(&ours, 0), 3, me).await.unwrap(), 0);
        let more = check(header(&ours, 4), 3, me).await.unwrap_err();
        assert!(more.to_string().contains("4 tickets, over the 3 asked for"), "{more}");
        let other = check(header(&params(2), 1), 3, me).await.unwrap_err();
        assert!(other.to_string().contains("other ticket params"), "{other}");
        // The same random hash, but another face value named beside tickets signed over ours.
        let named_dearer = spoiled(&ours, 2, |p| {
            p.ticket_params.as_mut().unwrap().face_value = U256::from(2000u64).to_be_bytes_vec();
        });
        let e = check(named_dearer, 3, me).await.unwrap_err();
        assert!(e.to_string().contains("other ticket params"), "{e}");
        let twice =
            spoiled(&ours, 2, |p| p.ticket_sender_params[1] = p.ticket_sender_params[0].clone());
        let e = check(twice, 3, me).await.unwrap_err();
        assert!(e.to_string().contains("share a sender nonce"), "{e}");
        assert!(check("%%".into(), 3, me).await.is_err());
        // Signed by another key than the signer's identity.
        let stranger = Some(Address::from([3u8; 20]));
        let e = check(header(&ours, 1), 3, stranger).await.unwrap_err();
        assert!(e.to_string().contains("other than the signer's identity"), "{e}");
        // A signature that is not the sender's, a face value other than the orchestrator's,
        // no expiration params: each refused before any orchestrator sees it.
        let bad_sig = spoiled(&ours, 2, |p| p.ticket_sender_params[1].sig = vec![1; 65]);
        let e = check(bad_sig, 3, me).await.unwrap_err();
        assert!(e.to_string().contains("not signed by its sender"), "{e}");
        let mut dearer = ours;
        dearer.face_value = U256::from(2000u64);
        let e = check(header(&dearer, 1), 3, me).await.unwrap_err();
        assert!(e.to_string().contains("other ticket params"), "{e}");
        // Named as ours, but signed over the dearer params.
        let signed_dearer = {
            let mut payment = livepeer_pm::decode_payment_header(&header(&dearer, 1)).unwrap();
            payment.ticket_params = Some(ours.to_payment_proto());
            payment_header_value(&payment)
        };
        let e = check(signed_dearer, 3, me).await.unwrap_err();
        assert!(e.to_string().contains("not signed by its sender"), "{e}");
        let no_expiry = spoiled(&ours, 2, |p| p.expiration_params = None);
        assert!(check(no_expiry, 3, me).await.is_err());
    }

    #[tokio::test]
    async fn many_tickets_are_checked_off_the_serving_thread_as_strictly() {
        let ours = params(1);
        let me = Some(livepeer_pm::LocalSigner::from_hex(KEY).unwrap().address());
        // On this one-thread runtime, a task spawned before the check runs during it only
        // if the check gives the thread up, as it does when it waits for a blocking thread.
        let yielded = |h: String| async move {
            let ran = Arc::new(AtomicBool::new(false));
            let flag = ran.clone();
            tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
            let checked = check_payment(&h, &ours, 100, me, &PaymentLimits::default()).await;
            (checked, ran.load(Ordering::SeqCst))
        };
        let (few, gave_up) = yielded(header(&ours, 2)).await;
        assert_eq!((few.unwrap(), gave_up), (2, false));
        let (many, gave_up) = yielded(header(&ours, 100)).await;
        assert_eq!((many.unwrap(), gave_up), (100, true));
        // One bad signature among a hundred, the last, is found there too.
        let bad_last = spoiled(&ours, 100, |p| p.ticket_sender_params[99].sig = vec![1; 65]);
        let e =
            check_payment(&bad_last, &ours, 100, me, &PaymentLimits::default()).await.unwrap_err();
        assert!(e.to_string().contains("not signed by its sender"), "{e}");
    }
}
