// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title VflAudit: append-only provenance of federated training jobs.
/// @notice A consortium admin registers organisations; a registered guest opens a
/// session naming the other participants (the session id is derived from the guest's
/// address and a label it chooses, so no one else can take it); each joins from its
/// own account; every
/// round each party posts a commitment to its parameters and the digest of the
/// round's message transcript; at the end each party posts its final model
/// commitment (the guest also the metrics hash) and the session closes.
/// A session nobody has written to for longer than the timeout its guest set when
/// opening it can be expired by any of its participants, so none stays open forever.
/// Nothing is ever overwritten, and every write emits an event, so the full history
/// of a session can be rebuilt from the logs alone (see docs/chain.md).
contract VflAudit {
    // ------------------------------------------------------------------ types

    enum Role { None, Guest, Host, Auditor }
    enum Status { None, Opened, Active, Closed, Aborted, Expired }
    enum RoundState { Pending, Attested, Disputed }

    /// A registered organisation. `role` and `organisation` are fixed at registration.
    struct Participant {
        Role role;
        bool revoked;
        uint64 registeredBlock;
        string organisation;
    }

    /// A training session. `participants[0]` is the guest that opened it.
    struct Session {
        address guest;
        Status status;
        uint8 size; // number of participants, guest included
        uint8 joined;
        uint8 finalized;
        uint64 openedBlock;
        uint64 openedAt; // block timestamp of the open
        uint64 timeout; // seconds without activity after which any participant may expire it
        bytes32 configCommitment;
        bytes32 metricsHash;
        bytes32 abortReason;
        address abortedBy;
        string algorithm;
        address[] participants;
    }

    /// One participant's standing in one session (one storage slot).
    struct Member {
        uint8 slot; // index in `participants` + 1; 0: not a participant
        bool joined;
        bool finalized;
        uint64 lastRound;
        uint64 lastActivity; // block timestamp of its last join, round or finalize (same slot: no extra write)
    }

    /// One party's submission for one round.
    struct Submission {
        bytes32 commitment;
        bytes32 transcriptDigest;
    }

    /// What `session()` returns.
    struct SessionView {
        address guest;
        Status status;
        string algorithm;
        bytes32 configCommitment;
        address[] participants;
        uint8 joined;
        uint8 finalized;
        uint64 openedBlock;
        bytes32 metricsHash;
        bytes32 abortReason;
        address abortedBy;
        uint64 lastActivity;
        uint64 timeout;
    }

    /// What `member()` returns.
    struct MemberView {
        bool isParticipant;
        bool joined;
        bool finalized;
        uint64 lastRound;
        bytes32 modelCommitment;
    }

    uint256 public constant MAX_PARTICIPANTS = 32;
    uint256 public constant MAX_TEXT_BYTES = 128;

    // ---------------------------------------------------------------- storage

    address public admin;
    /// The account `proposeAdmin` named; it becomes admin when it calls `acceptAdmin`.
    address public pendingAdmin;
    mapping(address => Participant) private _participants;
    address[] private _registered;

    mapping(bytes32 => Session) private _sessions;
    bytes32[] private _sessionIds;
    mapping(bytes32 => mapping(address => Member)) private _members;
    mapping(bytes32 => mapping(address => bytes32)) private _modelCommitments;
    /// sessionId => round => participant slot (index + 1) => submission
    mapping(bytes32 => mapping(uint256 => mapping(uint256 => Submission))) private _rounds;

    // ----------------------------------------------------------------- events

    event AdminProposed(address indexed admin, address indexed proposedAdmin);
    event AdminTransferred(address indexed previousAdmin, address indexed newAdmin);
    event ParticipantRegistered(address indexed account, Role role, string organisation);
    event ParticipantRevoked(address indexed account);

    event SessionOpened(
        bytes32 indexed sessionId,
        address indexed guest,
        bytes32 indexed label,
        string algorithm,
        bytes32 configCommitment,
        address[] participants,
        uint64 timeout
    );
    event SessionJoined(bytes32 indexed sessionId, address indexed party);
    event SessionActivated(bytes32 indexed sessionId);
    event RoundSubmitted(
        bytes32 indexed sessionId,
        uint64 indexed round,
        address indexed party,
        bytes32 commitment,
        bytes32 transcriptDigest
    );
    event RoundAttested(bytes32 indexed sessionId, uint64 indexed round, bytes32 transcriptDigest);
    event RoundDisputed(bytes32 indexed sessionId, uint64 indexed round);
    event PartyFinalized(
        bytes32 indexed sessionId,
        address indexed party,
        bytes32 modelCommitment,
        bytes32 metricsHash
    );
    event SessionClosed(bytes32 indexed sessionId, bytes32 metricsHash);
    event SessionAborted(bytes32 indexed sessionId, address indexed party, bytes32 reasonHash);
    event SessionExpired(bytes32 indexed sessionId, address indexed party, uint64 lastActivity);

    // ----------------------------------------------------------------- errors

    error NotAdmin(address account);
    error NotPendingAdmin(address account, address pendingAdmin);
    error ZeroAddress();
    error InvalidRole(uint8 role);
    error InvalidText(uint256 length);
    error AlreadyRegistered(address account);
    error NotRegistered(address account);
    error Revoked(address account);
    error AlreadyRevoked(address account);
    error WrongRole(address account, Role role);
    error ZeroValue(string field);
    error SessionExists(bytes32 sessionId);
    error UnknownSession(bytes32 sessionId);
    error BadParticipantCount(uint256 count);
    error DuplicateParticipant(address account);
    error NotParticipant(bytes32 sessionId, address account);
    error WrongSessionState(bytes32 sessionId, Status status);
    error AlreadyJoined(bytes32 sessionId, address party);
    error AlreadyFinalized(bytes32 sessionId, address party);
    error RoundOutOfOrder(bytes32 sessionId, uint64 round, uint64 lastRound);
    error DuplicateRound(bytes32 sessionId, uint64 round, address party);
    error MetricsHashRequired(bytes32 sessionId);
    error MetricsHashNotAllowed(bytes32 sessionId, address party);
    error NotExpired(bytes32 sessionId, uint256 expiresAt);

    // ------------------------------------------------------------ participants

    constructor() {
        admin = msg.sender;
        emit AdminTransferred(address(0), msg.sender);
    }

    modifier onlyAdmin() {
        require(msg.sender == admin, NotAdmin(msg.sender));
        _;
    }

    /// Register an organisation's account. Registration is permanent (revocation
    /// marks it, never deletes it) and cannot be changed.
    function registerParticipant(address account, Role role, string calldata organisation)
        external
        onlyAdmin
    {
        require(account != address(0), ZeroAddress());
        require(role != Role.None, InvalidRole(uint8(role)));
        uint256 n = bytes(organisation).length;
        require(n > 0 && n <= MAX_TEXT_BYTES, InvalidText(n));
        Participant storage p = _participants[account];
        require(p.role == Role.None, AlreadyRegistered(account));
        p.role = role;
        p.registeredBlock = uint64(block.number);
        p.organisation = organisation;
        _registered.push(account);
        emit ParticipantRegistered(account, role, organisation);
    }

    /// Propose another account as admin (step 1 of 2): nothing changes until that
    /// account calls `acceptAdmin`, so a mistyped address cannot take the role away.
    /// A new proposal replaces the previous one; proposing address(0) withdraws it.
    function proposeAdmin(address newAdmin) external onlyAdmin {
        pendingAdmin = newAdmin;
        emit AdminProposed(msg.sender, newAdmin);
    }

    /// Take the admin role (step 2 of 2), by the account `proposeAdmin` named.
    function acceptAdmin() external {
        address proposed = pendingAdmin;
        require(proposed != address(0) && msg.sender == proposed, NotPendingAdmin(msg.sender, proposed));
        emit AdminTransferred(admin, proposed);
        admin = proposed;
        pendingAdmin = address(0);
    }

    /// Revoke a participant: from now on it can write nothing.
    function revoke(address account) external onlyAdmin {
        Participant storage p = _participants[account];
        require(p.role != Role.None, NotRegistered(account));
        require(!p.revoked, AlreadyRevoked(account));
        p.revoked = true;
        emit ParticipantRevoked(account);
    }

    /// The caller must be registered and not revoked; returns its role.
    function _activeRole(address account) private view returns (Role role) {
        Participant storage p = _participants[account];
        role = p.role;
        require(role != Role.None, NotRegistered(account));
        require(!p.revoked, Revoked(account));
    }

    // ---------------------------------------------------------------- sessions

    /// The id of the session `opener` opens with `label`: bound to this chain, this
    /// contract and the opener, so another account opening the same label gets another id.
    function sessionIdOf(address opener, bytes32 label) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), opener, label));
    }

    /// Open a session as its guest, under the id `sessionIdOf(msg.sender, label)`
    /// (returned). `others` are the other participants (one host for a vertical job;
    /// more for horizontal jobs); each must join from its own account. After `timeout`
    /// seconds without an open, join, round or finalize, any participant may expire it.
    function openSession(
        bytes32 label,
        string calldata algorithm,
        bytes32 configCommitment,
        address[] calldata others,
        uint64 timeout
    ) external returns (bytes32 sessionId) {
        Role role = _activeRole(msg.sender);
        require(role == Role.Guest, WrongRole(msg.sender, role));
        require(label != bytes32(0), ZeroValue("label"));
        require(configCommitment != bytes32(0), ZeroValue("configCommitment"));
        require(timeout != 0, ZeroValue("timeout"));
        uint256 n = bytes(algorithm).length;
        require(n > 0 && n <= MAX_TEXT_BYTES, InvalidText(n));
        require(others.length > 0 && others.length < MAX_PARTICIPANTS, BadParticipantCount(others.length + 1));
        sessionId = sessionIdOf(msg.sender, label);
        Session storage s = _sessions[sessionId];
        require(s.status == Status.None, SessionExists(sessionId));

        s.guest = msg.sender;
        s.status = Status.Opened;
        s.size = uint8(others.length + 1);
        s.joined = 1;
        s.openedBlock = uint64(block.number);
        s.openedAt = uint64(block.timestamp);
        s.timeout = timeout;
        s.configCommitment = configCommitment;
        s.algorithm = algorithm;
        s.participants.push(msg.sender);
        _members[sessionId][msg.sender] = Member({slot: 1, joined: true, finalized: false, lastRound: 0, lastActivity: 0});
        for (uint256 i = 0; i < others.length; ++i) {
            address a = others[i];
            Role r = _activeRole(a);
            require(r == Role.Guest || r == Role.Host, WrongRole(a, r));
            Member storage m = _members[sessionId][a];
            require(m.slot == 0, DuplicateParticipant(a));
            m.slot = uint8(i + 2);
            s.participants.push(a);
        }
        _sessionIds.push(sessionId);
        emit SessionOpened(sessionId, msg.sender, label, algorithm, configCommitment, s.participants, timeout);
        emit SessionJoined(sessionId, msg.sender);
    }

    /// Join a session one was named in. The session becomes active when all have joined.
    function joinSession(bytes32 sessionId) external {
        (Session storage s, Member storage m) = _writer(sessionId, Status.Opened);
        require(!m.joined, AlreadyJoined(sessionId, msg.sender));
        m.joined = true;
        m.lastActivity = uint64(block.timestamp);
        uint8 joined = s.joined + 1;
        s.joined = joined;
        emit SessionJoined(sessionId, msg.sender);
        if (joined == s.size) {
            s.status = Status.Active;
            emit SessionActivated(sessionId);
        }
    }

    /// Abort an opened or active session, with the hash of a reason document.
    function abortSession(bytes32 sessionId, bytes32 reasonHash) external {
        _activeRole(msg.sender);
        Session storage s = _session(sessionId);
        require(_members[sessionId][msg.sender].slot != 0, NotParticipant(sessionId, msg.sender));
        require(s.status == Status.Opened || s.status == Status.Active, WrongSessionState(sessionId, s.status));
        require(reasonHash != bytes32(0), ZeroValue("reasonHash"));
        s.status = Status.Aborted;
        s.abortReason = reasonHash;
        s.abortedBy = msg.sender;
        emit SessionAborted(sessionId, msg.sender, reasonHash);
    }

    /// Expire an opened or active session nobody has written to for its timeout (any
    /// participant may: a job whose parties died must not stay open forever).
    function expireSession(bytes32 sessionId) external {
        _activeRole(msg.sender);
        Session storage s = _session(sessionId);
        require(_members[sessionId][msg.sender].slot != 0, NotParticipant(sessionId, msg.sender));
        require(s.status == Status.Opened || s.status == Status.Active, WrongSessionState(sessionId, s.status));
        uint64 last = _lastActivity(sessionId, s);
        uint256 expiresAt = uint256(last) + s.timeout;
        require(block.timestamp > expiresAt, NotExpired(sessionId, expiresAt));
        s.status = Status.Expired;
        s.abortedBy = msg.sender;
        emit SessionExpired(sessionId, msg.sender, last);
    }

    /// The latest of the open and every participant's last join, round or finalize.
    function _lastActivity(bytes32 sessionId, Session storage s) private view returns (uint64 last) {
        last = s.openedAt;
        uint256 n = s.participants.length;
        for (uint256 i = 0; i < n; ++i) {
            uint64 t = _members[sessionId][s.participants[i]].lastActivity;
            if (t > last) last = t;
        }
    }

    function _session(bytes32 sessionId) private view returns (Session storage s) {
        s = _sessions[sessionId];
        require(s.status != Status.None, UnknownSession(sessionId));
    }

    /// Checks shared by every participant write: caller active, session known and in
    /// `status`, caller one of its participants.
    function _writer(bytes32 sessionId, Status status)
        private
        view
        returns (Session storage s, Member storage m)
    {
        _activeRole(msg.sender);
        s = _session(sessionId);
        m = _members[sessionId][msg.sender];
        require(m.slot != 0, NotParticipant(sessionId, msg.sender));
        require(s.status == status, WrongSessionState(sessionId, s.status));
    }

    // ------------------------------------------------------------------ rounds

    /// Post this party's commitment and transcript digest for `round`. Round numbers
    /// only go forward per party; when every participant has posted the round, emit
    /// RoundAttested if all digests are equal, RoundDisputed otherwise.
    function submitRound(bytes32 sessionId, uint64 round, bytes32 commitment, bytes32 transcriptDigest)
        external
    {
        (Session storage s, Member storage m) = _writer(sessionId, Status.Active);
        require(!m.finalized, AlreadyFinalized(sessionId, msg.sender));
        uint64 last = m.lastRound;
        if (round <= last) {
            if (round > 0 && _rounds[sessionId][round][m.slot].transcriptDigest != bytes32(0)) {
                revert DuplicateRound(sessionId, round, msg.sender);
            }
            revert RoundOutOfOrder(sessionId, round, last);
        }
        require(commitment != bytes32(0), ZeroValue("commitment"));
        require(transcriptDigest != bytes32(0), ZeroValue("transcriptDigest"));
        m.lastRound = round;
        m.lastActivity = uint64(block.timestamp);
        mapping(uint256 => Submission) storage byParty = _rounds[sessionId][round];
        byParty[m.slot] = Submission(commitment, transcriptDigest);
        emit RoundSubmitted(sessionId, round, msg.sender, commitment, transcriptDigest);

        uint256 size = s.size;
        bool agree = true;
        for (uint256 slot = 1; slot <= size; ++slot) {
            bytes32 d = byParty[slot].transcriptDigest;
            if (d == bytes32(0)) return; // someone has not posted this round yet
            if (d != transcriptDigest) agree = false;
        }
        if (agree) emit RoundAttested(sessionId, round, transcriptDigest);
        else emit RoundDisputed(sessionId, round);
    }

    // ------------------------------------------------------------------- close

    /// Post this party's final model commitment (the guest also the metrics hash).
    /// The session closes when every participant has finalized.
    function finalize(bytes32 sessionId, bytes32 modelCommitment, bytes32 metricsHash) external {
        (Session storage s, Member storage m) = _writer(sessionId, Status.Active);
        require(!m.finalized, AlreadyFinalized(sessionId, msg.sender));
        require(modelCommitment != bytes32(0), ZeroValue("modelCommitment"));
        if (msg.sender == s.guest) {
            require(metricsHash != bytes32(0), MetricsHashRequired(sessionId));
            s.metricsHash = metricsHash;
        } else {
            require(metricsHash == bytes32(0), MetricsHashNotAllowed(sessionId, msg.sender));
        }
        m.finalized = true;
        m.lastActivity = uint64(block.timestamp);
        _modelCommitments[sessionId][msg.sender] = modelCommitment;
        uint8 finalized = s.finalized + 1;
        s.finalized = finalized;
        emit PartyFinalized(sessionId, msg.sender, modelCommitment, metricsHash);
        if (finalized == s.size) {
            s.status = Status.Closed;
            emit SessionClosed(sessionId, s.metricsHash);
        }
    }

    // ------------------------------------------------------------------- views

    function participant(address account) external view returns (Participant memory) {
        return _participants[account];
    }

    function participantCount() external view returns (uint256) {
        return _registered.length;
    }

    function participantAt(uint256 index) external view returns (address) {
        return _registered[index];
    }

    function sessionCount() external view returns (uint256) {
        return _sessionIds.length;
    }

    function sessionAt(uint256 index) external view returns (bytes32) {
        return _sessionIds[index];
    }

    function session(bytes32 sessionId) external view returns (SessionView memory v) {
        Session storage s = _session(sessionId);
        v = SessionView({
            guest: s.guest,
            status: s.status,
            algorithm: s.algorithm,
            configCommitment: s.configCommitment,
            participants: s.participants,
            joined: s.joined,
            finalized: s.finalized,
            openedBlock: s.openedBlock,
            metricsHash: s.metricsHash,
            abortReason: s.abortReason,
            abortedBy: s.abortedBy,
            lastActivity: _lastActivity(sessionId, s),
            timeout: s.timeout
        });
    }

    function member(bytes32 sessionId, address party) external view returns (MemberView memory v) {
        _session(sessionId);
        Member storage m = _members[sessionId][party];
        v = MemberView({
            isParticipant: m.slot != 0,
            joined: m.joined,
            finalized: m.finalized,
            lastRound: m.lastRound,
            modelCommitment: _modelCommitments[sessionId][party]
        });
    }

    /// A party's submission for a round (zeros when it posted none).
    function roundSubmission(bytes32 sessionId, uint64 round, address party)
        external
        view
        returns (Submission memory)
    {
        _session(sessionId);
        Member storage m = _members[sessionId][party];
        require(m.slot != 0, NotParticipant(sessionId, party));
        return _rounds[sessionId][round][m.slot];
    }

    /// Pending until every participant posted the round; then attested or disputed.
    function roundState(bytes32 sessionId, uint64 round) external view returns (RoundState) {
        Session storage s = _session(sessionId);
        mapping(uint256 => Submission) storage byParty = _rounds[sessionId][round];
        bytes32 first = byParty[1].transcriptDigest;
        if (first == bytes32(0)) return RoundState.Pending;
        bool agree = true;
        for (uint256 slot = 2; slot <= s.size; ++slot) {
            bytes32 d = byParty[slot].transcriptDigest;
            if (d == bytes32(0)) return RoundState.Pending;
            if (d != first) agree = false;
        }
        return agree ? RoundState.Attested : RoundState.Disputed;
    }
}
