@testable import FerryCore
import Testing

@Suite("SessionHandovers: one owner per session across brokers")
struct SessionHandoversTests {
    @Test("an uncontested claim owns at once; a contested one waits for the release, then reads")
    func ownAndWait() {
        var handovers = SessionHandovers()
        let mine = handovers.begin("alice")
        #expect(handovers.claimed(mine, generation: 3, ownerAsked: false) == .own)
        #expect(handovers.finish(mine) == true)
        let waiting = handovers.begin("alice")
        #expect(handovers.claimed(waiting, generation: 4, ownerAsked: true) == .wait)
        // A release for another claim, or another client, is not this one's.
        #expect(handovers.released("alice", generation: 3) == nil)
        #expect(handovers.released("bob", generation: 4) == nil)
        #expect(handovers.released("alice", generation: 4) == waiting)
        #expect(handovers.timedOut(waiting) == false)
        #expect(handovers.finish(waiting) == true)
        #expect(handovers.claims.isEmpty)
    }

    @Test("the deadline ends a wait once; a late release finds nothing")
    func deadline() {
        var handovers = SessionHandovers()
        let ticket = handovers.begin("alice")
        _ = handovers.claimed(ticket, generation: 2, ownerAsked: true)
        #expect(handovers.timedOut(ticket) == true)
        #expect(handovers.timedOut(ticket) == false)
        #expect(handovers.released("alice", generation: 2) == nil)
        #expect(handovers.finish(ticket) == true)
    }

    @Test("a newer claim elsewhere supersedes a waiting claim at once, and one in flight when the store answers")
    func superseded() {
        var handovers = SessionHandovers()
        let waiting = handovers.begin("alice")
        _ = handovers.claimed(waiting, generation: 5, ownerAsked: true)
        #expect(handovers.wanted("alice", generation: 6) == [waiting])
        #expect(handovers.finish(waiting) == false)
        let inFlight = handovers.begin("alice")
        #expect(handovers.wanted("alice", generation: 8).isEmpty)
        #expect(handovers.claimed(inFlight, generation: 7, ownerAsked: false) == .superseded)
        #expect(handovers.claims.isEmpty)
    }

    @Test("an older claim's notice supersedes nothing: the newest claim wins")
    func staleNotice() {
        var handovers = SessionHandovers()
        let inFlight = handovers.begin("alice")
        #expect(handovers.wanted("alice", generation: 3).isEmpty)
        #expect(handovers.claimed(inFlight, generation: 4, ownerAsked: true) == .wait)
        #expect(handovers.wanted("alice", generation: 2).isEmpty)
        #expect(handovers.wanted("bob", generation: 9).isEmpty)
        // Reading after the release, a newer claim still wins.
        #expect(handovers.released("alice", generation: 4) == inFlight)
        _ = handovers.wanted("alice", generation: 5)
        #expect(handovers.finish(inFlight) == false)
    }
}
